"""A run's data in a local folder: the files are where the stages read and write them."""

from __future__ import annotations

from pathlib import Path

from batchrunner.atomic import private_folder


class LocalStore:
    """The folder itself: `fetch` is a path join and `publish` has nothing left to do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self.remote = False

    def fetch(self, name: str) -> Path:
        return self.root / name

    def publish(self, name: str, local: Path) -> None:
        if local != self.root / name:
            private_folder((self.root / name).parent)
            local.replace(self.root / name)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(
            str(path.relative_to(self.root)) for path in self.root.rglob("*")
            if path.is_file() and str(path.relative_to(self.root)).startswith(prefix)
        )
