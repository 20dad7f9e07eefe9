import os
import sys
from pathlib import Path

# Offline by design: never wait on a model hub, never send analytics, never open a window.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/workflow_helpers.py
