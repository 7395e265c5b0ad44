"""Test-wide settings that must exist before llama_cpp is imported anywhere."""

import os

# llama.cpp's OpenMP workers busy-wait by default; on a shared 2-core runner that slows every model test.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
