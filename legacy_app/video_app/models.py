"""The legacy models, reproduced field for field (see shared/legacy_schema.md)."""
import uuid  # noqa: F401  (kept: the production models module imports it)

from django.contrib.auth.models import AbstractUser, Group, Permission
from django.core.exceptions import ValidationError
from django.db import models


class District(models.Model):
    name = models.CharField(max_length=100, unique=True)
    code = models.CharField(max_length=20, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class CustomAdmin(AbstractUser):
    first_name = models.CharField(max_length=100, null=True, blank=True)
    last_name = models.CharField(max_length=100, null=True, blank=True)
    school = models.CharField(max_length=100, null=True, blank=True)
    district = models.ForeignKey(
        District, on_delete=models.PROTECT, null=True, blank=True, related_name="admins"
    )
    # A shared password the teacher types to post media; stored in plain text.
    media_password = models.CharField(max_length=100, null=True, blank=True)
    profile_picture = models.CharField(max_length=255, null=True, blank=True)
    groups = models.ManyToManyField(
        Group, related_name="custom_admin_set", blank=True, verbose_name="groups"
    )
    user_permissions = models.ManyToManyField(
        Permission, related_name="custom_admin_set", blank=True, verbose_name="user permissions"
    )

    def __str__(self):
        return self.username


class Observer(models.Model):
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=100)  # a make_password hash
    district = models.ForeignKey(District, on_delete=models.PROTECT, related_name="observers")
    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        CustomAdmin, on_delete=models.SET_NULL, null=True, blank=True, related_name="observers_created"
    )

    def __str__(self):
        return self.name

    def can_view_session(self, session):
        return (
            session.created_by is not None
            and session.created_by.district_id == self.district_id
        )


class Session(models.Model):
    MODULE_CHOICES = [("4", "Module 4"), ("2", "Module 2")]

    name = models.CharField(max_length=100)
    original_name = models.CharField(max_length=100, null=True, blank=True)
    session_code = models.CharField(max_length=8, unique=True)
    section = models.IntegerField()
    module = models.CharField(max_length=20, choices=MODULE_CHOICES, default="4")
    created_at = models.DateTimeField(auto_now_add=True)
    is_paused = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        CustomAdmin, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    character_set = models.CharField(max_length=50, default="marvel")
    is_archived = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name

    def clean(self):
        # Only enforced here, never by the database: real data can break it.
        if not self.is_archived and self.created_by_id is not None:
            clash = Session.objects.filter(
                created_by_id=self.created_by_id, section=self.section, is_archived=False
            ).exclude(pk=self.pk)
            if clash.exists():
                raise ValidationError("An active session already exists for this section.")


class Student(models.Model):
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=100)  # the plain-text 5-digit PIN
    section = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="students")
    admin = models.ForeignKey(CustomAdmin, on_delete=models.CASCADE, related_name="students")
    device_id = models.CharField(max_length=255, null=True, blank=True)
    character_description = models.TextField(null=True, blank=True)
    avatar_image_path = models.CharField(max_length=255, null=True, blank=True)

    def __str__(self):
        return self.name


class Media(models.Model):
    MEDIA_TYPE_CHOICES = [("video", "Video"), ("image", "Image"), ("comment", "Comment")]

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="media")
    title = models.CharField(max_length=100)
    description = models.TextField(null=True, blank=True)
    media_type = models.CharField(max_length=10, choices=MEDIA_TYPE_CHOICES)
    video_file = models.FileField(upload_to="videos", null=True, blank=True)
    image_file = models.ImageField(upload_to="images", null=True, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    graph_likes = models.PositiveIntegerField(default=0)
    eye_likes = models.PositiveIntegerField(default=0)
    read_likes = models.PositiveIntegerField(default=0)
    graph_tag = models.CharField(max_length=50, null=True, blank=True)
    is_graph = models.BooleanField(default=False)
    variable_tag = models.CharField(max_length=50, null=True, blank=True)
    submitted_password = models.CharField(max_length=100, null=True, blank=True)
    student = models.ForeignKey(
        Student, on_delete=models.SET_NULL, null=True, blank=True, related_name="media"
    )
    posted_by_admin = models.ForeignKey(
        CustomAdmin, on_delete=models.SET_NULL, null=True, blank=True, related_name="media_posted"
    )
    project_group = models.UUIDField(null=True, blank=True)
    project_images = models.JSONField(null=True, blank=True)
    is_project = models.BooleanField(default=False)

    class Meta:
        ordering = ["-uploaded_at"]
        indexes = [
            models.Index(fields=["session", "-uploaded_at"]),
            models.Index(fields=["media_type"]),
            models.Index(fields=["graph_tag"]),
            models.Index(fields=["variable_tag"]),
        ]

    def __str__(self):
        return self.title


class StudentMediaInteraction(models.Model):
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="interactions")
    media = models.ForeignKey(Media, on_delete=models.CASCADE, related_name="interactions")
    liked_graph = models.BooleanField(default=False)
    liked_eye = models.BooleanField(default=False)
    liked_read = models.BooleanField(default=False)
    comment_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        unique_together = ("student", "media")


class Comment(models.Model):
    media = models.ForeignKey(Media, on_delete=models.CASCADE, related_name="comments")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="replies"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    name = models.CharField(max_length=100)
    device_id = models.CharField(max_length=255, null=True, blank=True)
    is_admin = models.BooleanField(default=False)
    student = models.ForeignKey(
        Student, on_delete=models.SET_NULL, null=True, blank=True, related_name="comments"
    )
    admin_avatar = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.name}: {self.text[:30]}"
