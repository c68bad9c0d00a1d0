#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    # Commands an operator runs (imports, seeding, recomputes) have no statement timeout; the
    # development server serves requests, so it has a web request's (prm/database.py).
    os.environ.setdefault("PRM_DB_ROLE", "web" if sys.argv[1:2] == ["runserver"] else "command")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
