"""Reusable widgets: terminal images, job progress."""

from salve_tui.app.widgets.image import HalfBlockImage, ImageView, image_backend
from salve_tui.app.widgets.progress import JobProgressPanel

__all__ = ["HalfBlockImage", "ImageView", "JobProgressPanel", "image_backend"]
