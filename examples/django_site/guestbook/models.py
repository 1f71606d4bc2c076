from django.db import models


class Entry(models.Model):
    name = models.CharField(max_length=100)
    message = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "entries"

    def __str__(self):
        return f"{self.name}: {self.message[:40]}"

    def as_dict(self):
        return {
            "id": self.id,
            "name": self.name,
            "message": self.message,
            "created": self.created.isoformat(),
        }
