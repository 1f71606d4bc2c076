"""The bench Django project (bench/apps/djsite) served as a deployment serves one: loaded
when the module is imported, as a project's wsgi.py does, so every server starts its
workers with Django loaded (and one that freezes the loaded app out of the garbage
collector, as oxgate does, gets to). A module of its own, so that the servers of the
other scenarios never load Django and their RSS does not include it."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

application = get_wsgi_application()
