// Starts Swagger UI on this service's OpenAPI document. A file of its own, not an inline script:
// the page's Content-Security-Policy allows scripts from the service only.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = window.SwaggerUIBundle({
    url: "openapi.json", // /api/openapi.json, relative so that a path prefix of a reverse proxy still works
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null, // no call to the public validator: nothing leaves the service
    tryItOutEnabled: false,
    persistAuthorization: false, // a pasted token lives only as long as the tab
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
  });
});
