from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self) -> None:
        # The sources admin previews a config with a real delivery's feedback.
        from feedback.variables import feedback_variables_for_event
        from sources.variables import event_variables_provide

        event_variables_provide(feedback_variables_for_event)
