"""The two bench views' routes."""

from django.urls import path

from djsite import views

urlpatterns = [
    path("json", views.json_view),
    path("template", views.template_view),
]
