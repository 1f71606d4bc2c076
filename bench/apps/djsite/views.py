"""A small JSON view and a template view with a loop of 10 items."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

ITEMS = [{"id": i, "name": f"item {i}", "price": i * 1.5} for i in range(10)]


def json_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"message": "Hello, World!", "items": 3, "ok": True})


def template_view(request: HttpRequest) -> HttpResponse:
    return render(request, "items.html", {"title": "Items", "items": ITEMS})
