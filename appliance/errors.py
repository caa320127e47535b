"""One exception family. Every message says what went wrong and what to do next."""


class ApplianceError(Exception):
    """Base of every error FaceGate reports to a user as one line."""


class ConfigError(ApplianceError, ValueError):
    """The configuration file is missing, unreadable, or has an unknown key or a bad value."""


class ModelError(ApplianceError):
    """A model file is missing, altered, or cannot be loaded by the TFLite runtime."""


class CameraError(ApplianceError):
    """A camera, stream, video or image folder cannot be opened or read."""


class ImageError(ApplianceError):
    """An image file cannot be read or decoded."""


class GalleryError(ApplianceError):
    """The gallery database is locked, damaged, or holds templates of another model."""


class EnrolmentError(ApplianceError):
    """An enrolment cannot go ahead: no face, several faces, a poor shot, or a face already enrolled."""


class HardwareError(ApplianceError):
    """GPIO pins cannot be opened with the configured pin factory."""
