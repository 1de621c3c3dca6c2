from django.apps import AppConfig


class VideoAppConfig(AppConfig):
    name = "legacy_app.video_app"
    label = "video_app"
    default_auto_field = "django.db.models.BigAutoField"
