"""The freeze toggle in the Django admin: one row, changed only by superusers."""
from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse

from .freeze import set_freeze
from .models import LegacyFreeze


@admin.register(LegacyFreeze)
class LegacyFreezeAdmin(admin.ModelAdmin):
    fields = ("frozen", "message", "since", "changed_by", "changed_at")
    readonly_fields = ("since", "changed_by", "changed_at")

    # Staff may look; only superusers may toggle.
    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # A singleton: the list is the one row's page.
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # the usual 403
        row, _ = LegacyFreeze.objects.get_or_create(pk=LegacyFreeze.SINGLETON_PK)
        opts = self.model._meta
        return redirect(reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[row.pk],
                                current_app=self.admin_site.name))

    def save_model(self, request, obj, form, change):
        # Through set_freeze, so `since`, `by` and this process's cache stay right.
        set_freeze(obj.frozen, obj.message, by=request.user.get_username())
        obj.refresh_from_db()
