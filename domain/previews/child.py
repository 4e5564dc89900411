"""The preview child, the other side of `domain.previews.sandbox.run_previews`.

`python -m domain.previews.child` reads one JSON header line and the decrypted
file from stdin, confines itself exactly like the analysis child (RLIMIT_AS, a
CPU backstop, no core dumps, no file writes through Landlock: `_limit` is the
analysis child's own), loads the mesh with the analysis loaders, welds it and
answers on stdout with either the binary `Previews.pack()` frame or one JSON
object `{"failed": reason}` / `{"memory": true}` / `{"error": name}`.
"""

from __future__ import annotations

import json
import os
import sys

from domain.analysis.child import MAX_HEADER, _limit

_STDOUT = 1


def main() -> int:
    result = os.fdopen(os.dup(_STDOUT), "wb")
    # Native libraries print to fd 1 (OpenCASCADE does): point it elsewhere.
    os.dup2(os.open(os.devnull, os.O_WRONLY), _STDOUT)
    source = sys.stdin.buffer
    header = json.loads(source.readline(MAX_HEADER))
    _limit(int(header["memory_bytes"]), int(header["cpu_seconds"]))
    data = source.read(int(header["size"]))
    result.write(_previews(data, header))
    result.flush()
    return 0


def _previews(data: bytes, header: dict) -> bytes:
    # Imported after confinement: a parser bug cannot act before the limits hold.
    import numpy as np

    from domain.analysis.errors import AnalysisFailed
    from domain.analysis.loaders import load_corners
    from domain.analysis.options import AnalysisOptions
    from domain.analysis.weld import weld

    from . import make_previews
    from .errors import PreviewError

    try:
        if len(data) != int(header["size"]):
            return _json({"failed": "The file arrived incomplete."})
        options = AnalysisOptions.from_dict(header["options"])
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            corners, _ = load_corners(data, header["format"], options)
            del data
            if not len(corners):
                return _json({"failed": "The model has no triangles."})
            vertices, faces = weld(np.ascontiguousarray(corners, dtype=np.float64))
            del corners
            return make_previews(vertices, faces).pack()
    except (PreviewError, AnalysisFailed) as exc:
        return _json({"failed": exc.reason})
    except MemoryError:
        return _json({"memory": True})
    except Exception as exc:  # for the logs only, never shown to a client
        return _json({"error": type(exc).__name__})


def _json(message: dict) -> bytes:
    return json.dumps(message).encode()


if __name__ == "__main__":
    status = main()
    os._exit(status)  # skip freeing hundreds of MB object by object
