from django import template

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
