import json
import sys
import time

from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .forms import EntryForm
from .models import Entry


@require_http_methods(["GET", "POST"])
def index(request):
    if request.method == "POST":
        form = EntryForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("guestbook:index")
    else:
        form = EntryForm()
    entries = Entry.objects.all()[:50]
    return render(request, "guestbook/index.html", {"form": form, "entries": entries})


@require_GET
def entries_json(request):
    return JsonResponse({"entries": [e.as_dict() for e in Entry.objects.all()[:100]]})


@require_GET
def server_info(request):
    """What the WSGI server handed Django: used by the end-to-end tests."""
    meta = request.META
    return JsonResponse(
        {
            "server_software": meta.get("SERVER_SOFTWARE", ""),
            "script_name": meta.get("SCRIPT_NAME", ""),
            "path_info": meta.get("PATH_INFO", ""),
            "path": request.path,
            "query": request.GET.dict(),
            "python": sys.version.split()[0],
            "multithread": bool(meta.get("wsgi.multithread")),
            "remote_addr": meta.get("REMOTE_ADDR", ""),
            "secure": request.is_secure(),
            "absolute_uri": request.build_absolute_uri("/"),
        },
        json_dumps_params={"sort_keys": True},
    )


@require_http_methods(["POST"])
def echo_json(request):
    """Echo a JSON body back; CSRF applies, so clients send the token header."""
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"error": "invalid JSON"}, status=400)
    return JsonResponse({"received": payload})


@require_GET
def slow(request):
    """Stands for a view that waits on a backend (an API, a slow query): sleeps
    ?ms= milliseconds (at most 1000). Used by the overload tests and bench/."""
    try:
        ms = min(max(int(request.GET.get("ms", "50")), 0), 1000)
    except ValueError:
        return JsonResponse({"error": "ms must be an integer"}, status=400)
    time.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms})
