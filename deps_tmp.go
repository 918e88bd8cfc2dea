package main
import (
 _ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
 _ "google.golang.org/grpc"
 _ "google.golang.org/grpc/health"
 _ "github.com/golang-jwt/jwt/v5"
 _ "github.com/redis/go-redis/v9"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/MicahParks/jwkset"
 _ "github.com/MicahParks/keyfunc/v3"
 _ "gopkg.in/yaml.v3"
)
func main(){}
