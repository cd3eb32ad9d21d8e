from rest_framework.renderers import BaseRenderer

from issuance import jsonio


class ContractJSONRenderer(BaseRenderer):
    """JSON with exact decimals (see issuance.jsonio)."""

    media_type = "application/json"
    format = "json"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return jsonio.dumps(data).encode("utf-8")
