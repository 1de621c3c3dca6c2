from django.contrib import admin
from django.urls import path

from legacy_app.video_app import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sessions/<int:session_id>/", views.session_page, name="session"),
    path("post/<int:media_id>/", views.post_page, name="post"),
    path("post/<int:media_id>/comment/", views.post_comment, name="post_comment"),
    path("post/<int:media_id>/react/", views.post_react, name="post_react"),
]
