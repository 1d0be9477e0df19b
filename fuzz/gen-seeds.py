#!/usr/bin/env python3
"""Regenerates fuzz/seeds/wire_decode/ from the test vectors in proto-spec.md (§9).

The seeds of the structured targets (reassembly_jitter, relay_datagrams, loss_tracker) are
byte strings read through `arbitrary`; they are committed as found by short fuzzing runs and
need no regeneration.
"""
import pathlib
import re

here = pathlib.Path(__file__).resolve().parent
spec = (here.parent / "proto-spec.md").read_text()
out = here / "seeds" / "wire_decode"
out.mkdir(parents=True, exist_ok=True)
name = None
buf = []
for line in spec.splitlines():
    m = re.fullmatch(r"vector (\S+)", line.strip())
    if m:
        name, buf = m.group(1), []
        continue
    if name is None:
        continue
    if line.startswith("```"):
        (out / f"{name}.bin").write_bytes(bytes.fromhex("".join(buf)))
        print(f"{name}: {len(bytes.fromhex(''.join(buf)))} bytes")
        name = None
        continue
    buf.append(line.strip())
