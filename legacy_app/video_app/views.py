"""The few legacy pages the freeze tests and the demo need: minimal, on the real models."""
from django.db import transaction
from django.db.models import Count, F
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .models import Comment, Media, Session, Student, StudentMediaInteraction

BADGES = ("graph", "eye", "read")


@require_GET
def session_page(request, session_id):
    session = get_object_or_404(Session, pk=session_id)
    media = session.media.annotate(comment_total=Count("comments"))
    return render(request, "video_app/session.html", {"session": session, "media_list": media})


@require_GET
def post_page(request, media_id):
    media = get_object_or_404(Media.objects.select_related("session", "student"), pk=media_id)
    return render(request, "video_app/post.html", {
        "media": media,
        "comments": media.comments.all(),
        "students": media.session.students.order_by("name"),
        "badges": [(badge, getattr(media, f"{badge}_likes")) for badge in BADGES],
    })


def _student_in_session(value, media):
    """The student posted as ``student_id`` when they belong to the media's session."""
    if not str(value or "").isdigit():
        return None
    return Student.objects.filter(pk=int(value), section_id=media.session_id).first()


@require_POST
def post_comment(request, media_id):
    media = get_object_or_404(Media, pk=media_id)
    name = request.POST.get("name", "").strip()
    text = request.POST.get("text", "").strip()
    if not name or not text:
        return HttpResponseBadRequest("name and text are required")
    student = _student_in_session(request.POST.get("student_id"), media)
    with transaction.atomic():
        Comment.objects.create(media=media, name=name[:100], text=text, student=student)
        if student is not None:
            interaction, _ = StudentMediaInteraction.objects.get_or_create(student=student, media=media)
            StudentMediaInteraction.objects.filter(pk=interaction.pk).update(comment_count=F("comment_count") + 1)
    return redirect("post", media_id=media.pk)


@require_POST
def post_react(request, media_id):
    """Toggle the student's badge on the media and keep the cached count in step."""
    media = get_object_or_404(Media, pk=media_id)
    badge = request.POST.get("badge")
    if badge not in BADGES:
        return HttpResponseBadRequest("badge must be one of: " + ", ".join(BADGES))
    student = _student_in_session(request.POST.get("student_id"), media)
    if student is None:
        return HttpResponseBadRequest("student_id must name a student of this session")
    flag, counter = f"liked_{badge}", f"{badge}_likes"
    with transaction.atomic():
        interaction, _ = (StudentMediaInteraction.objects.select_for_update()
                          .get_or_create(student=student, media=media))
        active = not getattr(interaction, flag)
        setattr(interaction, flag, active)
        interaction.save(update_fields=[flag, "updated_at"])
        counts = Media.objects.filter(pk=media.pk)
        if active:
            counts.update(**{counter: F(counter) + 1})
        else:  # never below zero (the column is unsigned on MySQL)
            counts.filter(**{f"{counter}__gt": 0}).update(**{counter: F(counter) - 1})
    if request.accepts("application/json") and not request.accepts("text/html"):
        count = Media.objects.values_list(counter, flat=True).get(pk=media.pk)
        return JsonResponse({"badge": badge, "active": active, "count": count})
    return redirect("post", media_id=media.pk)
