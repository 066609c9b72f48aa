"""burrow's benchmark harness: ``python -m benchmarks`` (``make bench``) measures burrow against the
seed-style baseline and the broker's ceiling and writes JSON, a markdown table and a PNG."""
