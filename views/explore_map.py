"""The Explore page's map as a Plotly WebGL scatter (scattergl), every point drawn. Chosen over pydeck by
benchmarks/explore_scale.py (pydeck selects by clicking objects, not regions, and sends its points as JSON
records); the choices below are what that measurement showed to cost in a browser drawing in software.

- One trace per colour in use (a colour-band trace for species and genera, whose colours repeat between
  far-apart clusters; one named trace per category, hence a legend, when there are LEGEND_MAX or fewer): a
  per-point colour array costs Plotly a colour-scale lookup, a colour string and its parse per point.
- Coordinates as uint16 on one square grid over the map, sent as binary typed arrays: 4 bytes a point. The
  axes are hidden and a selection comes back as points (trace, index), so only relative positions matter, and
  1/65,536 of the map is far below a pixel at any zoom.
- No per-point hover text: names would triple what the browser parses before drawing; a small box (or, in
  pan mode, a click) selects a point and the table names it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from snakeweb.explore import MapPoints, inside_polygon

LEGEND_MAX = 12  # categories named in a legend; more (species, genera) are named in the selection table
GRID = 65535


@dataclass
class DrawnMap:
    figure: go.Figure
    x: np.ndarray  # uint16 grid coordinates of each point, in MapPoints order
    y: np.ndarray
    order: np.ndarray  # MapPoints position of each drawn point, trace after trace
    starts: np.ndarray  # where each trace begins in `order`


def map_figure(points: MapPoints, colouring: str, height: int = 640) -> DrawnMap:
    codes, colours = points.codes[colouring], np.asarray(points.colours[colouring])
    names = np.asarray(points.categories[colouring], dtype=object)
    counts = np.bincount(codes, minlength=len(names))
    named = bool((counts > 0).sum() <= LEGEND_MAX)
    if named:  # a trace per category, named in the legend
        group, group_colour, group_name = codes, colours, names
    else:  # a trace per colour
        group_colour, colour_of_category = np.unique(colours, return_inverse=True)
        group, group_name = colour_of_category[codes], None
    order = np.argsort(group, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(group, minlength=len(group_colour)))]
    span = float(max(np.ptp(points.x), np.ptp(points.y))) if len(points) else 0.0
    x, y = grid(points.x, span), grid(points.y, span)
    size = marker_size(len(points))
    figure, starts = go.Figure(), []
    for g in np.flatnonzero(np.diff(bounds)):  # one iteration per trace (at most a few dozen), not per point
        members = order[bounds[g]:bounds[g + 1]]
        starts.append(bounds[g])
        figure.add_trace(go.Scattergl(
            x=x[members], y=y[members], mode="markers", hoverinfo="none", showlegend=named,
            name=str(group_name[g]) if named else "", marker=dict(color=str(group_colour[g]), size=size, opacity=0.8),
            unselected=dict(marker=dict(opacity=0.15)),
        ))
    figure.update_layout(
        height=height, margin=dict(l=0, r=0, t=0, b=0), dragmode="select", uirevision="map", hovermode="closest",
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"),
        legend=dict(itemsizing="constant", x=0, y=1, bgcolor="rgba(255,255,255,0.6)"),
    )
    return DrawnMap(figure, x, y, order, np.asarray(starts, dtype=np.int64))


def marker_size(count: int) -> int:
    """Marker diameter in pixels: 8 for a few dozen points, down to 2 at 100k+ (each pixel a WebGL draw covers
    is work for a browser drawing in software: 3 px cost twice what 2 px do at 182k points)."""
    return int(np.clip(round(14 - 2.2 * np.log10(max(count, 1))), 2, 8))


def grid(values: np.ndarray, span: float) -> np.ndarray:
    """Coordinates as uint16 steps of `span` / 65,535 from their minimum (one span for both axes keeps the shape)."""
    if not len(values) or span <= 0:
        return np.zeros(len(values), dtype=np.uint16)
    return np.round((values - values.min()) * (GRID / span)).astype(np.uint16)


def selected_positions(event, drawn: DrawnMap) -> np.ndarray | None:
    """MapPoints positions of the selected points; None when nothing is selected. Plotly names each selected point
    by (trace, index in the trace), which `order` maps back: exactly what it highlights, boxes, lassos and clicks
    together. Only a selection without points (a region with none in it) is read from the outlines drawn."""
    selection = getattr(event, "selection", None) or {}
    chosen, boxes, lassos = selection.get("points") or [], selection.get("box") or [], selection.get("lasso") or []
    if chosen:
        curve = np.fromiter((p.get("curve_number", -1) for p in chosen), np.int64, len(chosen))
        index = np.fromiter((p.get("point_index", -1) for p in chosen), np.int64, len(chosen))
        ok = (curve >= 0) & (curve < len(drawn.starts)) & (index >= 0)
        at = drawn.starts[curve[ok]] + index[ok]
        return np.unique(drawn.order[at[at < len(drawn.order)]])
    if not (boxes or lassos):
        return None
    inside = np.zeros(len(drawn.x), dtype=bool)
    for box in boxes:
        (x0, x1), (y0, y1) = sorted(box["x"]), sorted(box["y"])
        inside |= (drawn.x >= x0) & (drawn.x <= x1) & (drawn.y >= y0) & (drawn.y <= y1)
    for lasso in lassos:
        inside |= inside_polygon(drawn.x, drawn.y, np.asarray(lasso["x"], float), np.asarray(lasso["y"], float))
    return np.flatnonzero(inside)
