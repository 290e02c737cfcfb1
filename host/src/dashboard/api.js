// The dashboard's one way to the host: fetch on /api/v1 with the session
// cookie (same origin), answering errors with the API's own message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { method, body, headers, credentials: 'same-origin' });
  } catch (error) {
    throw new ApiError(0, 'unreachable', `The host does not answer (${error.message}); is it running?`);
  }
  if (response.status === 401) {
    // The session ended (logged out elsewhere, or the tokens changed).
    window.location.assign('/login');
    throw new ApiError(401, 'unauthorized', 'Your session has ended; log in again.');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = data?.error?.code ?? `http_${response.status}`;
    throw new ApiError(response.status, code, data?.error?.message ?? (text || response.statusText));
  }
  return data;
}

export const get = (path) => api(path);

export function post(path, body, contentType) {
  const headers = contentType ? { 'Content-Type': contentType } : {};
  return api(path, { method: 'POST', body, headers });
}
