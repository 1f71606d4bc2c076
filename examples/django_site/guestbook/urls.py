from django.urls import path

from . import views

app_name = "guestbook"

urlpatterns = [
    path("", views.index, name="index"),
    path("api/entries", views.entries_json, name="entries"),
    path("api/info", views.server_info, name="info"),
    path("api/echo", views.echo_json, name="echo"),
    path("api/slow", views.slow, name="slow"),
]
