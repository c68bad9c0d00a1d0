"""A staticfiles finder that serves the charting library from the installed plotly package.

plotly (PyPI) ships the plotly.js bundle as `plotly/package_data/plotly.min.js`; exposing it as
`vendor/plotly/plotly.min.js` keeps the browser asset in step with the pinned package, with no CDN
at run time and no copy of the file in the repository. `collectstatic` picks it up like any other.
"""

from pathlib import Path
from typing import Any, Literal, overload

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import CheckMessage
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor/plotly"
FILES = ("plotly.min.js",)


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.location = Path(plotly.__file__).resolve().parent / "package_data"
        self.storage = FileSystemStorage(location=str(self.location))
        # collectstatic reads storage.prefix; Django's FileSystemFinder sets it the same way, but the
        # stubs do not declare the attribute.
        self.storage.prefix = PREFIX  # type: ignore[attr-defined]

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return []

    @overload
    def find(self, path: str, find_all: Literal[False] = False) -> str | None: ...
    @overload
    def find(self, path: str, find_all: Literal[True]) -> list[str]: ...
    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> str | list[str] | None:
        # Like Django's own finders: the path (or a list of them with find_all), [] for no match.
        find_all = find_all or kwargs.get("all", False)
        for name in FILES:
            if path == f"{PREFIX}/{name}":
                match = str(self.location / name)
                return [match] if find_all else match
        return []

    def list(self, ignore_patterns):
        for name in FILES:
            yield name, self.storage
