"""Container health check: GET /health on the server's own port; exit status 0 when it answers 200."""

import os
import sys
import urllib.request

port = os.environ.get("IIIFSERVER_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
