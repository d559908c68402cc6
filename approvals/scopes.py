SCOPES = {
    "approvals:read": "see approval requests",
    "approvals:request": "ask for approval and wait for the decision",
}
