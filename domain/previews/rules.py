"""Every number the previews obey, in one place."""

from __future__ import annotations

# glTF for the web viewer: at most this many triangles (issue 12).
MAX_GLB_TRIANGLES = 200_000
# Larger inputs are refused before any work: above the biggest upload the analysis
# accepts as binary STL (256 MiB is 5.4 million triangles), and it bounds the
# preview's memory (measured: ~95 bytes a triangle above the input's own arrays,
# 472 MiB for 5.2 M triangles; docs/previews.md).
MAX_INPUT_TRIANGLES = 8_000_000
# Above this, a vertex-clustering pass first brings the mesh down to about
# CLUSTER_TARGET_FACTOR x the target; the quadric simplifier then does the rest
# (measured: 1.3-2.5x faster on 1.3 M triangles, 6-7x on 5.2 M, a fraction of the
# memory; docs/previews.md).
CLUSTER_ABOVE_TRIANGLES = 800_000
CLUSTER_TARGET_FACTOR = 2.0
# Coarser clusterings tried (each halving the target) when quadric collapse stalls.
MAX_EXTRA_CLUSTERINGS = 4
# A triangle whose doubled area, relative to the model's size squared, is below
# this is degenerate: it has no normal and draws nothing.
MIN_RELATIVE_AREA = 1e-14
# Edges sharper than this keep separate normals on each side in the GLB, so that a
# cube's faces stay flat in the viewer while a scanned surface stays smooth.
CREASE_DEGREES = 30.0

# The thumbnail.
THUMBNAIL_PIXELS = 512
SUPERSAMPLING = 2  # rendered at 2x and averaged down: anti-aliased edges
FILL = 0.9  # the model's projection fills this share of the picture's side
# Fixed three-quarter view of a Z-up part: from the front right, above.
VIEW_AZIMUTH_DEGREES = 35.0
VIEW_ELEVATION_DEGREES = 28.0
# Lighting: a key light from the viewer's upper left, a weaker one from the viewer
# (so faces turned away from the key are not black), and ambient.
BASE_COLOUR = (0.55, 0.64, 0.78)  # a neutral blue-grey part
AMBIENT = 0.22
DIFFUSE = 0.58
HEADLIGHT = 0.30
# Samples on a crease of the visible surface (sharper than CREASE_DEGREES) are
# darkened by this factor: outlines the edges of pockets and engravings.
CREASE_SHADE = 0.55
LIGHT_DIRECTION = (-0.40, 0.85, 0.35)  # in view space: x right, y up, z to the viewer
# Samples tested per batch: bounds the rasteriser's memory (~100 bytes each).
FRAGMENTS_PER_BATCH = 1_000_000
# Samples tested in all: bounds its time (~0.1-0.2 us each). A fine 200 k-triangle
# mesh tests ~2-4 M at 1024x1024; only large triangles stacked many deep reach this.
MAX_CANDIDATE_SAMPLES = 64_000_000

MM_PER_METRE = 1000.0
# glTF stores float32; anything larger than this (in metres) is not representable.
MAX_METRES = 1e30
