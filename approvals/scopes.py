SCOPES = {
    "approvals:read": "see approval requests",
    "approvals:request": "ask for approval and wait for the decision",
}
# Asking, waiting, cancelling and clearing are an agent's part (no admin page grants the add
# permission); deciding, a person's, needs the decide permission (approvals.views.approval_decide).
PERMISSIONS = {
    "approvals:read": ("approvals.view_approvalrequest",),
    "approvals:request": ("approvals.add_approvalrequest",),
}
