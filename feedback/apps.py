from importlib import import_module

from django.apps import AppConfig

# The app's models live with their concern; Django registers a model when its
# module is imported, and it imports only `feedback.models` by itself.
CONCERN_MODELS = (
    "feedback.audit.models",
    "feedback.forwarding.models",
    "feedback.imports.models",
    "feedback.returns.models",
    "feedback.returns.proxies",
    "feedback.sourcestatus.models",
    "feedback.webhooks.models",
    "feedback.suppression.models",
    "feedback.privacy.models",
)


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def import_models(self) -> None:
        super().import_models()
        for module in CONCERN_MODELS:
            import_module(module)

    def ready(self) -> None:
        # The sources admin previews a config with a real delivery's feedback;
        # sources cannot import feedback, so feedback hands it the lookup.
        from feedback.variables import feedback_variables_for_event
        from sources.variables import event_variables_provide

        event_variables_provide(feedback_variables_for_event)

        from feedback.webhooks.configuration import register as register_webhooks

        register_webhooks()

        from feedback.configuration import section_register
        from feedback.suppression.configuration import SECTION as SUPPRESSION

        section_register(SUPPRESSION)

        from feedback.audit.adminlog import adminlog_connect

        adminlog_connect()
