from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from feedback.configuration import section_register
        from monitoring.configuration import MONITORS

        section_register(MONITORS)
