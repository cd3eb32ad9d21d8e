from django.core.management.base import BaseCommand

from issuance.fake_vendor import FakeVendor


class Command(BaseCommand):
    help = "Run the demo vendor on 127.0.0.1 (POST /redeem/<mode>, GET /status/<reference>)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8099)

    def handle(self, *args, port: int, **options):
        server = FakeVendor(port)
        self.stdout.write(f"fake vendor on {server.base_url}/redeem/ok (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
