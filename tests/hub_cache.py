"""A Hugging Face hub cache on disk, made offline: lets code that names a model by its hub id (as a
user's would) load a local directory, with HF_HUB_OFFLINE=1 so nothing is fetched."""
from __future__ import annotations

from pathlib import Path

REVISION = "0" * 40


def hub_cache(root: Path, models: dict[str, Path]) -> dict[str, str]:
    """Cache `{repo_id: local model dir}` under `root` (files linked, not copied); the environment to use it."""
    for repo_id, source in models.items():
        repo = root / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / REVISION
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(REVISION)
        for file in Path(source).rglob("*"):
            if file.is_file():
                target = snapshot / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(file.resolve())
    return {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
