from django.urls import path

from approvals import views

urlpatterns = [
    path("approvals", views.approval_list, name="approvals"),
    path("approvals/clear-expired", views.clear_expired, name="approvals-clear-expired"),
    path("approvals/<id:request_id>", views.approval_detail, name="approval"),
    path("approvals/<id:request_id>/wait", views.approval_wait, name="approval-wait"),
    path("approvals/<id:request_id>/cancel", views.approval_cancel, name="approval-cancel"),
    path("approvals/<id:request_id>/decide", views.approval_decide, name="approval-decide"),
]
