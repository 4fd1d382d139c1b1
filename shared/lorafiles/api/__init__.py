"""The HTTP API of the web frontend (docs/API.md).

app.py           Powertools APIGatewayHttpResolver: routes, OpenAPI, the one error mapping
auth.py          Supabase JWT verification (JWKS via supabase-py get_claims, legacy HS256)
errors.py        error bodies and the API's own errors (401, 403, 404 route, 415, 500)
models.py        pydantic request/response models (the OpenAPI schemas)
local_server.py  `lorafiles serve`: the same resolver behind a stdlib HTTP server
signing.py       HMAC-signed download URLs of the local server
cors.py          allowed browser origins (Powertools CORSConfig; LORAFILES_CORS_ALLOWED_ORIGINS)
web/             the training-files page served by the local server at / (static ES modules)
openapi.py       docs/openapi.json (write / check)
"""
