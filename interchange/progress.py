"""Import progress a client can poll: each file's rows done, rate and time left, kept in Django's cache.

`POST /api/v1/imports/` with a `progress_id` (a name the client chooses) records the import's
progress under that id for the uploading user; `GET /api/v1/imports/progress/<progress_id>/` reads
it while the upload is still being imported (from another connection) and after it ended. Set
CACHE_URL so every web process reads the same cache (docs/interchange.md).
"""

from typing import Any

from django.core.cache import cache

from interchange.importer import FileProgress, ImportResult

KEEP_SECONDS = 24 * 3600


def _key(user_id: int, progress_id: str) -> str:
    return f"import-progress:{user_id}:{progress_id}"


class CachedProgress:
    """An `on_progress` callback for `import_program` that keeps the latest state of every file."""

    def __init__(self, *, user_id: int, progress_id: str) -> None:
        self.key = _key(user_id, progress_id)
        self.state: dict[str, Any] = {"state": "running", "files": {}, "errors": 0}
        cache.set(self.key, self.state, KEEP_SECONDS)

    def __call__(self, progress: FileProgress) -> None:
        self.state["files"][progress.file] = progress.as_dict()
        cache.set(self.key, self.state, KEEP_SECONDS)

    def finished(self, result: ImportResult) -> None:
        for name, summary in result.files.items():
            entry = self.state["files"].setdefault(name, {"file": name})
            entry.update(summary.counts(), seconds=round(summary.seconds, 1), stage="done", seconds_left=0)
        self.state["state"] = "done"
        cache.set(self.key, self.state, KEEP_SECONDS)

    def failed(self, errors: int) -> None:
        self.state.update(state="failed", errors=errors)
        cache.set(self.key, self.state, KEEP_SECONDS)


def read_progress(*, user_id: int, progress_id: str) -> dict[str, Any] | None:
    return cache.get(_key(user_id, progress_id))
