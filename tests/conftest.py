import sys
from pathlib import Path

# Test helpers (references, streams) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from redis_server import redis_server  # noqa: E402,F401  (the private redis-server fixture)
