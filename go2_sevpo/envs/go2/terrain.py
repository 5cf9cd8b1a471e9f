"""Procedural box terrain for the Go2 tasks: a grid of tracks over a deep pit, plus its height maps.

Each track runs along +x: a start platform, obstacles, and a goal platform whose centre is the
destination. Obstacles are box platforms separated by gaps (both kinds) and, on hard terrain,
hills made of two rotated boxes (slopes up to 45 degrees) around a top platform. Tracks sit side by
side in y, separated by a strip of pit; track index = row * cols + col, and the row is the
difficulty level a curriculum moves along (difficulty (row + 1) / rows scales the upper end of the
gap and slope ranges, so the last row covers the task's full range).

The same layout is rasterised into two height maps (torch tensors, x-major, one cell = `resolution`):
  height_map   the top surface, pit depth where there is no box; the height scan gathers from it.
  support_map  the surface with gaps bridged by the lower of their two edges and the side pits by
               the track's own profile; a base below it has fallen off the track (a cost event).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

# Ranges per terrain kind. Units: metres, radians.
TERRAIN_KINDS: dict[str, dict] = {
    # One long platform per track: for a weak "walks but never saw obstacles" policy and smoke tests.
    "flat": dict(platform=(100.0, 100.0), gap=(0.0, 0.0), height_jitter=0.0, hill_prob=0.0),
    # ENVS.md simple: platforms 0.8-1.2 m, gaps 0.1-0.35 m (stones at short intervals).
    "simple": dict(platform=(0.8, 1.2), gap=(0.1, 0.35), height_jitter=0.05, hill_prob=0.0),
    # ENVS.md hard: slopes up to 45 degrees and gaps up to 0.6 m.
    "hard": dict(platform=(0.8, 1.2), gap=(0.2, 0.6), height_jitter=0.1, hill_prob=0.4,
                 slope=(math.radians(15.0), math.radians(45.0)), hill_rise=(0.15, 0.35)),
}

PLATFORM_RGBA = ((0.55, 0.6, 0.65, 1.0), (0.45, 0.5, 0.55, 1.0))
RAMP_RGBA = (0.75, 0.55, 0.35, 1.0)
PIT_RGBA = (0.12, 0.1, 0.1, 1.0)


@dataclass
class Segment:
    """One piece of a track's profile along its local coordinate u (metres from the track start)."""

    kind: str  # "platform" | "gap" | "ramp"
    u0: float
    u1: float
    h0: float  # surface height at u0 (platforms: h0 == h1; gaps: heights of the edges around it)
    h1: float


@dataclass
class Box:
    pos: tuple[float, float, float]
    half_size: tuple[float, float, float]
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = PLATFORM_RGBA[0]


@dataclass
class TerrainLayout:
    """Everything the env and the MJCF builder need; tensors are on `device`."""

    kind: str
    rows: int
    cols: int
    track_length: float
    track_width: float
    track_spacing: float
    resolution: float
    pit_depth: float
    tracks: list[list[Segment]]
    boxes: list[Box]
    origin: tuple[float, float]  # world (x, y) of height-map cell (0, 0)'s centre
    height_map: torch.Tensor  # (nx, ny)
    support_map: torch.Tensor  # (nx, ny)
    start_pos: torch.Tensor  # (num_tracks, 3): spawn point, z = surface height
    goal_pos: torch.Tensor  # (num_tracks, 3): destination, z = surface height
    track_row: torch.Tensor  # (num_tracks,) difficulty row of each track
    platform_spans: list[list[tuple[float, float, float]]] = field(default_factory=list)

    @property
    def num_tracks(self) -> int:
        return self.rows * self.cols

    def _cells(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.round((xy[..., 0] - self.origin[0]) / self.resolution).long()
        iy = torch.round((xy[..., 1] - self.origin[1]) / self.resolution).long()
        return ix.clamp(0, self.height_map.shape[0] - 1), iy.clamp(0, self.height_map.shape[1] - 1)

    def heights(self, xy: torch.Tensor) -> torch.Tensor:
        """Surface height at world points xy (..., 2): a nearest-cell gather, no ray cast."""
        ix, iy = self._cells(xy)
        return self.height_map[ix, iy]

    def support(self, xy: torch.Tensor) -> torch.Tensor:
        """Gap-bridged support surface height at world points xy (..., 2)."""
        ix, iy = self._cells(xy)
        return self.support_map[ix, iy]

    def to(self, device: torch.device) -> "TerrainLayout":
        for name in ("height_map", "support_map", "start_pos", "goal_pos", "track_row"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def _difficulty(row: int, rows: int) -> float:
    return (row + 1) / rows


def _track_segments(kind: str, difficulty: float, length: float, start_length: float, goal_length: float,
                    rng: np.random.Generator) -> list[Segment]:
    """The profile of one track: start platform, obstacles, gap, goal platform ending at `length`."""
    params = TERRAIN_KINDS[kind]
    gap_lo, gap_hi = params["gap"]
    gap_hi = gap_lo + difficulty * (gap_hi - gap_lo)
    jitter = params["height_jitter"] * difficulty
    segments = [Segment("platform", 0.0, start_length, 0.0, 0.0)]
    if kind == "flat":
        segments[0] = Segment("platform", 0.0, length, 0.0, 0.0)
        return segments
    u, h = start_length, 0.0
    room_for_goal = gap_hi + goal_length

    def add_gap(width: float, next_h: float) -> None:
        nonlocal u
        segments.append(Segment("gap", u, u + width, h, next_h))
        u += width

    def add_platform(plen: float, height: float) -> None:
        nonlocal u, h
        segments.append(Segment("platform", u, u + plen, height, height))
        u, h = u + plen, height

    while True:
        plen = rng.uniform(*params["platform"])
        if rng.uniform() < params["hill_prob"]:
            # Hill: ramp up, top platform, ramp down, landing platform (no gaps in between).
            slope_lo, slope_hi = params["slope"]
            slope = rng.uniform(slope_lo, slope_lo + difficulty * (slope_hi - slope_lo))
            rise = rng.uniform(*params["hill_rise"])
            ramp = rise / math.tan(slope)
            landing = rng.uniform(*params["platform"])
            if u + 2 * ramp + plen + landing + room_for_goal > length:
                break
            top = h + rise
            segments.append(Segment("ramp", u, u + ramp, h, top))
            u = u + ramp
            add_platform(plen, top)
            down = h - rise
            segments.append(Segment("ramp", u, u + ramp, h, down))
            u = u + ramp
            add_platform(landing, down)
        else:
            gap = rng.uniform(gap_lo, gap_hi)
            if u + gap + plen + room_for_goal > length:
                break
            next_h = float(np.clip(h + rng.uniform(-jitter, jitter), -2 * jitter, 2 * jitter)) if jitter else 0.0
            add_gap(gap, next_h)
            add_platform(plen, next_h)
    # Final gap, then the goal platform up to the track end (at least goal_length long).
    if gap_hi > 0:
        add_gap(rng.uniform(gap_lo, gap_hi), h)
    add_platform(length - u, h)
    return segments


def _segment_boxes(seg: Segment, y: float, width: float, pit_depth: float, shade: int) -> list[Box]:
    """Boxes for one segment: platforms are pillars down to the pit floor; ramps a rotated slab on a
    pillar whose top is the ramp's lower end."""
    if seg.kind == "gap":
        return []
    length = seg.u1 - seg.u0
    if seg.kind == "platform":
        top = seg.h0
        return [Box(((seg.u0 + seg.u1) / 2, y, (top - pit_depth) / 2),
                    (length / 2, width / 2, (top + pit_depth) / 2), rgba=PLATFORM_RGBA[shade % 2])]
    rise = seg.h1 - seg.h0
    theta = math.atan2(rise, length)
    half_len = math.hypot(length, rise) / 2
    # Thick enough that the slab reaches the pillar top at the high end (no hole under the slope).
    half_thick = max(0.05, abs(rise) / (2 * math.cos(theta)) + 0.02)
    normal = (-math.sin(theta), math.cos(theta))
    centre = ((seg.u0 + seg.u1) / 2 - half_thick * normal[0], (seg.h0 + seg.h1) / 2 - half_thick * normal[1])
    phi = -theta  # rotation about +y that tilts the box's x axis up by theta
    quat = (math.cos(phi / 2), 0.0, math.sin(phi / 2), 0.0)
    low = min(seg.h0, seg.h1)
    return [
        Box((centre[0], y, centre[1]), (half_len, width / 2, half_thick), quat, RAMP_RGBA),
        Box(((seg.u0 + seg.u1) / 2, y, (low - pit_depth) / 2), (length / 2, width / 2, (low + pit_depth) / 2),
            rgba=RAMP_RGBA),
    ]


def _profile(segments: list[Segment], u: np.ndarray, pit_depth: float, bridged: bool) -> np.ndarray:
    """Surface height along the track at positions u; gaps are the pit, or bridged by their lower edge."""
    out = np.full(u.shape, -pit_depth)
    for seg in segments:
        inside = (u >= seg.u0) & (u < seg.u1)
        if seg.kind == "platform":
            out[inside] = seg.h0
        elif seg.kind == "ramp":
            out[inside] = seg.h0 + (u[inside] - seg.u0) / (seg.u1 - seg.u0) * (seg.h1 - seg.h0)
        elif bridged:
            out[inside] = min(seg.h0, seg.h1)
    return out


def generate_terrain(kind: str, rows: int = 5, cols: int = 4, track_length: float = 10.0,
                     track_width: float = 1.6, track_spacing: float = 2.0, resolution: float = 0.05,
                     pit_depth: float = 1.0, start_length: float = 1.5, goal_length: float = 1.5,
                     border: float = 1.0, seed: int = 0, device: str | torch.device = "cpu") -> TerrainLayout:
    if kind not in TERRAIN_KINDS:
        raise ValueError(f"unknown terrain '{kind}'; known terrains: {', '.join(sorted(TERRAIN_KINDS))}")
    if rows < 1 or cols < 1:
        raise ValueError(f"terrain needs rows >= 1 and cols >= 1, got rows={rows} cols={cols}")
    if track_length < start_length + goal_length + 1.0:
        raise ValueError(f"track_length {track_length} is too short for the start and goal platforms")
    rng = np.random.default_rng(seed)
    num_tracks = rows * cols
    tracks, boxes, start, goal = [], [], [], []
    for t in range(num_tracks):
        row = t // cols
        segments = _track_segments(kind, _difficulty(row, rows), track_length, start_length, goal_length, rng)
        tracks.append(segments)
        y = t * track_spacing
        for i, seg in enumerate(segments):
            boxes.extend(_segment_boxes(seg, y, track_width, pit_depth, shade=i // 2 + t))
        start.append((start_length / 2, y, 0.0))
        goal.append((track_length - goal_length / 2, y, segments[-1].h0))
    # Pit floor: its top is the pit depth, under the whole terrain.
    x_lo, x_hi = -border, track_length + border
    y_lo, y_hi = -track_spacing / 2 - border, (num_tracks - 0.5) * track_spacing + border
    boxes.append(Box(((x_lo + x_hi) / 2, (y_lo + y_hi) / 2, -pit_depth - 0.05),
                     ((x_hi - x_lo) / 2, (y_hi - y_lo) / 2, 0.05), rgba=PIT_RGBA))

    nx = int(round((x_hi - x_lo) / resolution))
    ny = int(round((y_hi - y_lo) / resolution))
    xs = x_lo + (np.arange(nx) + 0.5) * resolution
    ys = y_lo + (np.arange(ny) + 0.5) * resolution
    height = np.full((nx, ny), -pit_depth)
    support = np.empty((nx, ny))
    # Each y column belongs to its nearest track; the support map extends tracks over the side pits
    # and past their ends, the height map only over the platform width.
    nearest = np.clip(np.round(ys / track_spacing).astype(int), 0, num_tracks - 1)
    on_platform = np.abs(ys - nearest * track_spacing) <= track_width / 2
    u_clamped = np.clip(xs, 0.0, track_length - 1e-6)
    for t, segments in enumerate(tracks):
        cols_t = nearest == t
        surface = _profile(segments, xs, pit_depth, bridged=False)
        bridged = _profile(segments, u_clamped, pit_depth, bridged=True)
        height[:, cols_t & on_platform] = surface[:, None]
        support[:, cols_t] = bridged[:, None]
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return TerrainLayout(
        kind=kind, rows=rows, cols=cols, track_length=track_length, track_width=track_width,
        track_spacing=track_spacing, resolution=resolution, pit_depth=pit_depth, tracks=tracks, boxes=boxes,
        origin=(float(xs[0]), float(ys[0])), height_map=as_t(height), support_map=as_t(support),
        start_pos=as_t(start), goal_pos=as_t(goal),
        track_row=torch.arange(num_tracks, device=device) // cols,
    )
