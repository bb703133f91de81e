from django.db import migrations

OUTCOME_CODES = [
    # (code, label, kind, description)
    ("converted", "Converted", "conversion", "The lead became a customer."),
    ("contacted", "Contacted", "status", "The buyer reached the person."),
    ("no_contact", "No contact", "status", "The buyer could not reach the person."),
    ("bad_info", "Bad information", "return", "Wrong or invalid contact details."),
    ("duplicate", "Duplicate", "return", "The buyer already had this lead."),
    ("not_interested", "Not interested", "status", "The person declined."),
    ("returned", "Returned", "return", "Returned for another reason."),
]


def seed(apps, schema_editor):
    OutcomeCode = apps.get_model("feedback", "OutcomeCode")
    for position, (code, label, kind, description) in enumerate(OUTCOME_CODES):
        OutcomeCode.objects.update_or_create(
            code=code,
            defaults={
                "label": label,
                "kind": kind,
                "description": description,
                "position": position,
            },
        )


def unseed(apps, schema_editor):
    OutcomeCode = apps.get_model("feedback", "OutcomeCode")
    OutcomeCode.objects.filter(code__in=[row[0] for row in OUTCOME_CODES]).delete()


class Migration(migrations.Migration):
    dependencies = [("feedback", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
