// The OpenAPI docs page (/docs): Swagger UI bundled into this build, so no third-party script
// runs in the API's origin. "Try it out" sends the session cookie, so it adds the CSRF header
// that cookie-authenticated writes need.
import SwaggerUIBundle from 'swagger-ui-dist/swagger-ui-bundle.js';

SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  requestInterceptor: (request) => {
    request.headers['X-Tingjian-CSRF'] = '1';
    return request;
  },
});
