package arcgissim

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// token is an issued token and what it is bound to.
type token struct {
	issued, expires time.Time
	static          bool
	client          string // referer, ip or requestip
	referer, ip     string
}

// generateToken answers POST generateToken: form parameters username,
// password, client (default referer), referer, ip, expiration (minutes,
// default 60) and f. Refusals are error 400 "Unable to generate token.", as
// ArcGIS answers a wrong password.
func (s *Server) generateToken(w http.ResponseWriter, r *http.Request, portal bool) {
	refuse := func(detail string) {
		s.mu.Lock()
		s.stats.FailedLogins++
		s.mu.Unlock()
		s.writeError(w, false, 400, "Unable to generate token.", []string{detail})
	}
	if r.Method != http.MethodPost {
		// Credentials in a URL end up in logs: the operation is POST only.
		refuse("The generateToken operation must be called with POST.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	if err := r.ParseForm(); err != nil {
		refuse("The request body is not a valid form.")
		return
	}
	form := r.PostForm
	f := strings.ToLower(form.Get("f"))
	if f != "json" && f != "pjson" {
		writeHTMLPage(w, http.StatusOK, "Generate Token", "Use f=json to get the token as JSON.")
		return
	}
	user, pass := form.Get("username"), form.Get("password")
	s.mu.Lock()
	want, ok := s.opts.Users[user]
	s.mu.Unlock()
	if !ok || user == "" || pass != want {
		refuse("Invalid username or password.")
		return
	}
	t := &token{client: strings.ToLower(form.Get("client"))}
	switch t.client {
	case "", "referer":
		t.client = "referer"
		if t.referer = form.Get("referer"); t.referer == "" {
			refuse("'referer' must be specified when client is referer.")
			return
		}
	case "ip":
		if t.ip = form.Get("ip"); net.ParseIP(t.ip) == nil {
			refuse("'ip' must be a valid IP address when client is ip.")
			return
		}
	case "requestip":
		t.ip = remoteIP(r)
	default:
		refuse("Invalid client: use referer, ip or requestip.")
		return
	}
	minutes := 60
	if v := form.Get("expiration"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			refuse("Invalid expiration.")
			return
		}
		minutes = n
	}
	life := min(time.Duration(minutes)*time.Minute, s.opts.MaxTokenExpiration)
	value := simkit.RandomHex(32)
	now := s.clock.Now()
	t.issued, t.expires = now, now.Add(life)
	s.mu.Lock()
	s.tokens[value] = t
	s.stats.TokensIssued++
	s.mu.Unlock()
	if portal {
		writeJSON(w, struct {
			Token   string `json:"token"`
			Expires int64  `json:"expires"`
			SSL     bool   `json:"ssl"`
		}{value, t.expires.UnixMilli(), s.opts.TLS})
		return
	}
	writeJSON(w, struct {
		Token   string `json:"token"`
		Expires int64  `json:"expires"`
	}{value, t.expires.UnixMilli()})
}

// authorize checks the request's token and answers 498 or 499 when it does
// not pass.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, admin bool) bool {
	value, inQuery := requestToken(r)
	now := s.clock.Now()
	s.mu.Lock()
	if inQuery {
		s.stats.QueryTokens++
	}
	t, known := s.tokens[value]
	code := 0
	switch {
	case value == "" && s.opts.Anonymous:
	case value == "":
		code = 499
	case !known:
		code = 498
	case t.static:
	case !now.Before(t.expires):
		code = 498
	case t.client == "referer" && r.Referer() != t.referer:
		code = 498
	case t.client != "referer" && remoteIP(r) != t.ip:
		code = 498
	}
	switch code {
	case 498:
		s.stats.InvalidToken++
	case 499:
		s.stats.TokenRequired++
	}
	s.mu.Unlock()
	switch {
	case code == 499 && admin:
		s.writeError(w, true, 499, "Unauthorized access. Token not found. You can generate a token using the 'generateToken' operation.", nil)
	case code == 499:
		s.writeError(w, false, 499, "Token Required", nil)
	case code == 498 && admin:
		s.writeError(w, true, 498, "Invalid token.", nil)
	case code == 498:
		s.writeError(w, false, 498, "Invalid Token", nil)
	}
	return code == 0
}

// requestToken finds the token: the X-Esri-Authorization or Authorization
// header ("Bearer <token>"), else a token parameter.
func requestToken(r *http.Request) (value string, inQuery bool) {
	for _, h := range []string{"X-Esri-Authorization", "Authorization"} {
		v := strings.TrimSpace(r.Header.Get(h))
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:]), false
		}
	}
	if v := r.URL.Query().Get("token"); v != "" {
		return v, true
	}
	return r.PostFormValue("token"), false
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func pathUnescape(s string) (string, error) { return url.PathUnescape(s) }
