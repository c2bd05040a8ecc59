package store

import (
	"encoding/json"
)

// The format of schema 1: JSON records whose secret fields alone were
// sealed (sealer.seal, bound to bucket, record and field) while every
// other field was clear and unauthenticated. Only the migration to schema
// 2 reads it; nothing writes it.

// decodeTokenFields decodes a schema 1 token record.
func decodeTokenFields(s *sealer, key, v []byte) (Token, error) {
	var r tokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	t := r.token(string(key))
	var err error
	if t.AccessToken, err = s.open(r.AccessToken, bucketTokens, key, "access_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.RefreshToken, err = s.open(r.RefreshToken, bucketTokens, key, "refresh_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.IDToken, err = s.open(r.IDToken, bucketTokens, key, "id_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.DPoPKey, err = s.open(r.DPoPKey, bucketTokens, key, "dpop_key"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	return t, nil
}

// decodeClientFields decodes a schema 1 client record.
func decodeClientFields(s *sealer, key, v []byte) (Client, error) {
	var r clientRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	c := r.client(string(key))
	var err error
	if c.ClientSecret, err = s.open(r.ClientSecret, bucketClients, key, "client_secret"); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	if c.RegistrationAccessToken, err = s.open(r.RegistrationAccessToken, bucketClients, key, "registration_access_token"); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	return c, nil
}
