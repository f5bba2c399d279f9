"""A local folder laid out like the Hub copy of LibriTTS-R (mythicinfinity/libritts_r): the README's
``configs`` block that `datasets` reads, pointing config ``all`` at parquet files per split."""
from pathlib import Path

LIBRITTS_CARD = """\
---
configs:
- config_name: all
  data_files:
  - split: train.clean.100
    path: data/train.clean.100-*.parquet
  - split: train.clean.360
    path: data/train.clean.360-*.parquet
---
"""


def write_libritts_card(root: Path) -> None:
    """The dataset card of a local LibriTTS-R-like repo whose parquet files are under ``root/data``."""
    (root / "README.md").write_text(LIBRITTS_CARD)
