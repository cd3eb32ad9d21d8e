import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

from staff.filters import local_time

register = template.Library()


@register.simple_tag(takes_context=True)
def page_url(context, param: str, number) -> str:
    """This page's query string with ``param`` set to ``number`` (filters are kept)."""
    query = context["request"].GET.copy()
    query[param] = number
    return "?" + query.urlencode()


@register.filter
def status_class(code) -> str:
    """A CSS class for an engine status code (200 ok, 8010 partial, else refused)."""
    if code in (200, "200"):
        return "ok"
    if code in (8010, "8010"):
        return "partial"
    return "refused"


@register.filter
def org_time(value, zone):
    """A time as the staff pages show it: in ``zone`` (the org, or a time zone name) with the
    zone's abbreviation, in a ``<time>`` whose ``datetime`` is the UTC instant the database keeps:
    ``{{ line.created_at|org_time:line.org }}`` → ``2026-03-10 23:30 PDT``. Also takes an ISO
    8601 string (the engine's ``resetsAt``); empty stays empty (for ``|default``)."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return format_html(
        '<time datetime="{}">{}</time>',
        value.astimezone(datetime.UTC).isoformat(),
        local_time(value, zone),
    )
