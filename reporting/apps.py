from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from feedback.configuration import section_register
        from reporting.digests.configuration import DIGESTS

        section_register(DIGESTS)
