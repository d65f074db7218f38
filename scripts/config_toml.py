#!/usr/bin/env python3
"""Writes config.toml from the configuration models: every key, its default and its description.

    scripts/config_toml.py            # rewrite config.toml
    scripts/config_toml.py --check    # exit 1 if config.toml differs from what the models say
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flashmm.config import SIM_PRESETS, Config  # noqa: E402

HEADER = """\
# FlashMM configuration. These values are the built-in defaults: with no --config FlashMM runs exactly
# this, offline, on the embedded simulated Sei market. Unknown keys, wrong types and out-of-range values
# are rejected at start (exit 2, naming the file and the key). Any key can be overridden from the
# environment as FLASHMM_<SECTION>__<KEY>, e.g. FLASHMM_RUN__SEED=11 (secrets and endpoints belong there).
# Generated from flashmm/config.py by scripts/config_toml.py; edit the models, then regenerate.
"""


def _literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    return repr(v)


def render() -> str:
    out = [HEADER]
    # [sim] keys that a preset sets are written commented out, with every preset's value: uncommented in
    # the file they would override whatever preset is chosen
    preset_keys = {"sim": {k: {name: values[k] for name, values in SIM_PRESETS.items()}
                           for k in next(iter(SIM_PRESETS.values()))}}
    for section, model in Config():
        doc = (type(model).__doc__ or "").strip()
        for line in doc.splitlines():
            out.append(f"# {line.strip()}".rstrip())
        out.append(f"[{section}]")
        for name, field in type(model).model_fields.items():
            cons = []
            for m in field.metadata:
                for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    if getattr(m, attr, None) is not None:
                        cons.append(f"{sym} {getattr(m, attr)}")
            extra = f" ({', '.join(cons)})" if cons else ""
            by_preset = preset_keys.get(section, {}).get(name)
            if by_preset is None:
                out.append(f"# {field.description or name}{extra}")
                out.append(f"{name} = {_literal(getattr(model, name))}")
            else:
                values = ", ".join(f"{k} {_literal(v)}" for k, v in by_preset.items())
                out.append(f"# {field.description or name}{extra} [preset: {values}]")
                out.append(f"# {name} = {_literal(getattr(model, name))}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    text = render()
    path = ROOT / "config.toml"
    if "--check" in sys.argv:
        sys.exit(0 if path.read_text() == text else 1)
    path.write_text(text)
    print(f"wrote {path}")
