"""``python -m dmic_core.assets_check``: verify the shipped weights (used by scripts/setup.sh)."""

from dmic_core.assets import main

raise SystemExit(main())
