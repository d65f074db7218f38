#!/usr/bin/env python3
"""Writes config.toml from the configuration models: every key, its default and its description.

    scripts/config_toml.py            # rewrite config.toml
    scripts/config_toml.py --check    # exit 1 if config.toml differs from what the models say
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flashmm.config import Config, render_toml  # noqa: E402

HEADER = """\
# FlashMM configuration. These values are the built-in defaults: with no --config FlashMM runs exactly
# this, offline, on the embedded simulated Sei market. Unknown keys, wrong types and out-of-range values
# are rejected at start (exit 2, naming the file and the key). Any key can be overridden from the
# environment as FLASHMM_<SECTION>__<KEY>, e.g. FLASHMM_RUN__SEED=11 (secrets and endpoints belong there).
# Generated from flashmm/config.py by scripts/config_toml.py; edit the models, then regenerate.
"""


def render() -> str:
    return render_toml(Config(), HEADER, commented_presets=True)


if __name__ == "__main__":
    text = render()
    path = ROOT / "config.toml"
    if "--check" in sys.argv:
        sys.exit(0 if path.read_text() == text else 1)
    path.write_text(text)
    print(f"wrote {path}")
