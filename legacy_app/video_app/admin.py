from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import (
    Comment,
    CustomAdmin,
    District,
    Media,
    Observer,
    Session,
    Student,
    StudentMediaInteraction,
)


@admin.register(CustomAdmin)
class CustomAdminAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (
        ("School", {"fields": ("school", "district", "media_password", "profile_picture")}),
    )
    list_display = ("username", "email", "school", "district", "is_staff")


@admin.register(District)
class DistrictAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "is_active")


@admin.register(Observer)
class ObserverAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "district", "is_active")


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("name", "session_code", "section", "created_by", "is_archived")


@admin.register(Student)
class StudentAdmin(admin.ModelAdmin):
    list_display = ("name", "section", "admin")
    exclude = ("password",)


@admin.register(Media)
class MediaAdmin(admin.ModelAdmin):
    list_display = ("title", "session", "media_type", "uploaded_at")


admin.site.register(StudentMediaInteraction)
admin.site.register(Comment)
