# A stand-in for Vagrant, for testbed/vagrantfile_test.go: it loads a
# Vagrantfile with plain ruby, records everything the configuration block
# sets and calls, and prints it as JSON. Usage: ruby vagrant_stub.rb VAGRANTFILE
require "json"

# Rec records attribute assignments (vm.box = "x"), namespaces (vm) and
# calls (vm.define "n" do |m| ... end), running blocks on a fresh Rec.
class Rec
  def initialize
    @attrs = {}
    @calls = []
  end

  def method_missing(name, *args, **opts, &block)
    n = name.to_s
    if n.end_with?("=")
      @attrs[n.chomp("=")] = args.first
    elsif args.empty? && opts.empty? && block.nil?
      @attrs[n] ||= Rec.new
    else
      call = { "method" => n, "args" => args, "opts" => opts }
      if block
        child = Rec.new
        block.call(child, Rec.new)
        call["block"] = child.to_h
      end
      @calls << call
      nil
    end
  end

  def respond_to_missing?(*)
    true
  end

  def to_h
    attrs = @attrs.transform_values { |v| v.is_a?(Rec) ? v.to_h : v }
    { "attrs" => attrs, "calls" => @calls }
  end
end

module Vagrant
  def self.configure(version)
    raise "unexpected configuration version #{version}" unless version == "2"

    config = Rec.new
    yield config
    CONFIGS << config.to_h
  end

  def self.require_version(*); end

  def self.has_plugin?(*)
    false
  end
end

CONFIGS = []
load ARGV.fetch(0)
puts JSON.pretty_generate(CONFIGS)
