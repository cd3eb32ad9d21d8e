"""The token endpoint's rules (OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"]).

Only the client-credentials grant exists here, and only for a confidential Application
that is a registered, active and correctly bound ApiClient. Everything else answers as
bad client credentials (invalid_client), whatever the reason."""

from oauth2_provider.oauth2_validators import OAuth2Validator

from .selectors import api_client_for_application


class ApiClientOAuth2Validator(OAuth2Validator):
    def authenticate_client(self, request, *args, **kwargs):
        if not super().authenticate_client(request, *args, **kwargs):
            return False
        client = api_client_for_application(request.client.pk)
        return client is not None and not client.binding_errors()

    def authenticate_client_id(self, client_id, request, *args, **kwargs):
        return False  # no public clients: every client authenticates with its secret

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        return grant_type == "client_credentials" and super().validate_grant_type(
            client_id, grant_type, client, request, *args, **kwargs
        )
