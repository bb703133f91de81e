# XML configs now take their document element from the mappings when every
# target starts with the same element, as LeadConduit does (`lead.fname` sends
# `<lead>…</lead>`); before, everything went inside `<feedback>`. Configs saved
# before whose targets would now pick their own root get `feedback.` in front of
# each target, so they keep sending exactly what they sent. The rule is copied
# here, not imported, so that later changes to the code leave this step alone.

from django.db import migrations

PREFIX = "feedback"


def _single_element(targets):
    """Whether the targets start with one element that is not repeated and has
    no attribute of the document's own (`@version`)."""
    firsts = set()
    for target in targets:
        path = target.strip().partition("@")[0]
        segments = [segment.strip() for segment in path.split(".")]
        if not path or segments[0].isdigit():
            return False
        if len(segments) > 1 and segments[1].isdigit():
            return False  # `lead.0.…`: several <lead>
        firsts.add(segments[0])
    return len(firsts) == 1


def keep_feedback_root(apps, schema_editor):
    FeedbackConfig = apps.get_model("sources", "FeedbackConfig")
    FieldMapping = apps.get_model("sources", "FieldMapping")
    for config in FeedbackConfig.objects.filter(method="xml"):
        mappings = list(FieldMapping.objects.filter(config=config))
        if not mappings or not _single_element(m.target for m in mappings):
            continue
        for mapping in mappings:
            mapping.target = f"{PREFIX}.{mapping.target.strip()}"
        FieldMapping.objects.bulk_update(mappings, ["target"])


def drop_feedback_root(apps, schema_editor):
    FeedbackConfig = apps.get_model("sources", "FeedbackConfig")
    FieldMapping = apps.get_model("sources", "FieldMapping")
    for config in FeedbackConfig.objects.filter(method="xml"):
        mappings = list(FieldMapping.objects.filter(config=config))
        if not mappings or not all(
            m.target.startswith(f"{PREFIX}.") for m in mappings
        ):
            continue
        for mapping in mappings:
            mapping.target = mapping.target[len(PREFIX) + 1 :]
        FieldMapping.objects.bulk_update(mappings, ["target"])


class Migration(migrations.Migration):
    dependencies = [
        ("sources", "0006_feedbackconfig_s3"),
    ]

    operations = [
        migrations.RunPython(keep_feedback_root, drop_feedback_root),
    ]
