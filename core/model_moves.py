"""Moving models from one app to another with every row: what the receiving app's migration runs
after it has taken the models over (their state, with the old tables' names) and renamed their
tables."""

from __future__ import annotations

from django.db import migrations


def move_content_types(old_app: str, new_app: str, *models: str) -> migrations.RunPython:
    """The models' content types follow them, and with them the permissions granted to users and
    groups and the admin's history; reversible."""

    def move(apps, schema_editor, source: str = old_app, target: str = new_app) -> None:
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
        for model in models:
            if not content_types.filter(app_label=target, model=model).exists():
                content_types.filter(app_label=source, model=model).update(app_label=target)

    def move_back(apps, schema_editor) -> None:
        move(apps, schema_editor, source=new_app, target=old_app)

    return migrations.RunPython(move, move_back)
